"""Reports: where the model agrees with people and where it does not, and exports to retrain.

Every aggregate is counted by the database (`selectors`); the statistics (`stats`) run on the
small aggregated tables; `charts` draws them as SVG on the server; `exports` streams rows.
"""
