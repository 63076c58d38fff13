"""clave: one disposable Tart VM, branch and Herd URL per Claude Code session."""

__version__ = "0.1.0"
