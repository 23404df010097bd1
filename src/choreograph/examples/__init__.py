"""Example choreographies shipped with the package, so ``choreograph demo`` runs after ``pip install``."""
