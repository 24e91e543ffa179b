"""The run directory and what people see of a run: its files (config, identity, metrics log, summary,
plots, log), the claim on its name, and the console. Imports no Ray at import time."""
