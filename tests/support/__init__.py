"""What the tests share: free ports, waiting, reading records back, configurations, and the real parts they run."""
