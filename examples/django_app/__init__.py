"""A minimal Django project with one free and one paid route (see ``settings.py`` for the environment)."""
