"""The paper's study, an application of the pipeline (not a stage of it).

"Efficient Defenses Against Adversarial Attacks" (Zantedeschi, Nicolae, Rawat, 2017,
https://arxiv.org/abs/1707.06728), reproduced with the same code paths as `advbench train`,
`attack`, `evaluate` and `transfer`:

- ``published``: the paper's published numbers, printed beside ours;
- ``experiments``: `advbench reproduce`, the grid of stages and their results;
- ``profiles``: its settings (models, profiles, data sets), TensorFlow-free for the CLI;
- ``report``: the report of a reproduction (tables, figures, findings);
- ``toy``: the two-dimensional toy study of Figure 2.
"""
