"""Rank lists, embedding plots and pseudo-label curves (pure drawing functions; the tools orchestrate)."""
from .embeddings import MARKERS, identity_colours, plot_embeddings, save_figure, tsne_2d
from .pseudo_label_curves import load_history, plot_history
from .ranklist import CORRECT, QUERY, WRONG, RankListLayout, contact_sheet, draw_ranklist, top_k
from .ranklist_writer import RankListWriter, choose_queries

__all__ = [k for k in globals() if not k.startswith("_")]
