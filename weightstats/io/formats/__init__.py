"""One reader module per checkpoint format; :mod:`weightstats.io.checkpoint` picks one."""
