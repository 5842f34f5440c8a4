"""The run directory and its checkpoints: who may write there, how files land, how a run resumes.

One place owns these, so the rules stay consistent: `lock` (one live run per directory),
`files` (atomic checkpoint writes), `resume` (which checkpoint `ckpt_path` means, and whether it
loads), `config_check` (what a resume may change), `history` (earlier configs are kept),
`signals` (SIGTERM/SIGINT end a run at a step boundary with a checkpoint).
"""
