"""Explanations: attention relevance, Grad-CAM and integrated gradients on every modality, rendered, and checked for faithfulness.

Start from `medmm.explain.explainer.explain_study` (in memory) or `medmm.explain.run`
(`explain_patient`, `explain_cohort`, behind `medmm explain`).
"""
