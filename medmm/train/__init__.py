"""Reusable training pieces (targets, data, losses, state, logging); the loops live in training/."""
