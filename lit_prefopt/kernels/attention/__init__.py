"""Shared-prompt attention: the rule described once as segment ids, and the backends built from it.

`segments.SegmentIds` (what the collate produces, linear in the row length), and in `backends`
the selection by `model.attn_implementation`: dense mask (`sdpa`, `eager`), FlexAttention
`BlockMask` (`flex_attention`), varlen plan (`varlen`).
"""
