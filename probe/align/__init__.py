"""Alignment heads on frozen features: head and loss definitions, configuration, training, the sweep."""
