"""Readers that turn files into medmm records. Library objects never leave this package."""

from medmm.io.study import classify_files, load_study

__all__ = ["classify_files", "load_study"]
