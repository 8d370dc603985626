"""The stage after the journal: silences applied, grouping, storms, inhibition and the incident policy.

`stage` is the one readable order of the steps; `policy`, `storm`, `inhibit` and `settings` are pure.
"""
