"""Input channels. One class per channel; shared input checks live in ``guard``."""
