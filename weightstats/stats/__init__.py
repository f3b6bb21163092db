"""The statistics engine: fits, mixtures, model selection, normality, tails, verdicts.

Everything here works on plain float64 numpy arrays (validated by ``as_sample``); nothing here
knows about files, torch modules or formatting.
"""
