"""Rewrites: pure passes over sqlglot trees (each returns a new tree), applied by the planner in this order:

1. `projections.plan_projections`: derived columns for AVG, distinct aggregates, GROUP BY / ORDER BY / HAVING
   operands; shard GROUP BY and ORDER BY; HAVING moves to the merger (multi-node SELECT only).
2. `pagination.paginate`: LIMIT/OFFSET become each shard's first offset+count rows (multi-node SELECT only).
3. `insert_rows.keep_rows` and `generated_keys.add_generated_key`: a unit's INSERT rows and generated keys.
4. `tables.rename_tables` and `index_names.rename_index`: logic names to actual names, per unit.

`text` renders the result (or, when no tree pass is needed, renames in the client's own text). `template` generates
a tree once for every unit (logic tables renamed to markers, then each unit's names filled in), and `scatter` keeps
a multi-node SELECT's whole rewrite per statement shape, literals and LIMIT values filled in per statement.
"""
