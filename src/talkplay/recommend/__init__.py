"""Recommending: constrained generation of music tokens, lookup, and the Recommender protocol."""
