"""Solana (SVM) payment schemes; they need the ``svm`` extra (``solders``)."""
