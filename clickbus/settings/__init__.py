"""How a setting is declared once and everything else derived from it.

`clickbus/config.py` declares each setting as an annotated field of a frozen dataclass: its type (which
carries the check), its default and its `Doc`. This package turns those declarations into parsing with every
problem reported by key path (`problems`), environment overrides and the commented TOML file (`toml`).
"""
