"""The pure core: parse, validate, mask, seal. No network, no disk, no clock reads."""
