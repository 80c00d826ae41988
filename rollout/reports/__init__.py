"""Reports: where the model agrees with people and where it does not, and exports to retrain.

The page reads pre-counted figures (`rollup` keeps them, `precounted` reads them, `sections`
arranges each section, `figures` are what it shows; `selectors.report_build` is the entry
point). The statistics (`stats`) run on the small aggregated tables; `charts` draws them as
SVG on the server; `disagreements` lists the cases to look at; `exports` streams rows.
"""
