"""cpt_utils — the logic behind the cpt notebooks: continued pre-training of small causal LMs.

Each module has one job (see DESIGN.md §4); notebooks only call into them.
"""

__version__ = "0.1.0"
