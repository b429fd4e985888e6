"""Backends: one implementation per place the pipeline runs (local, AWS), chosen by SIGNAL_BACKEND."""
