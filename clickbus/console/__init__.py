"""The operator console: a page on the internal listener, fed by the notifier's samples of every process's metrics.

`feed` runs in the notifier (one per service): every second it samples the metrics of every
process and writes the last minutes of samples, and the latest clicks with their verdicts and
callback outcomes (`recent`), where every edge worker reads them (`store`). `routes` serve the page,
its assets (shipped in `static/`, uPlot vendored) and that feed as JSON.
"""
