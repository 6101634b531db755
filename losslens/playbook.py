"""The playbook entries findings cite: public sources (docs/playbook.md lists them in full).

`diagnosis` words its findings; this is what they rest on, one short citation per entry.
"""
from __future__ import annotations

#: entry name → the citation a finding prints
CITES = {
    "spike_types": "Spike types: fast, slow and non-recovering spikes (S. Bekman, Machine "
                   "Learning Engineering, 'Understanding Training Loss Patterns')",
    "palm": "PaLM, arXiv 2204.02311 §5.1: restart ~100 steps before, skip 200-500 batches",
    "adam_eps": "Molybog et al., arXiv 2304.09871: Adam epsilon and time-domain correlation",
    "init": "Init std sqrt(1/(3*hidden)) (arXiv 2201.11990) / sqrt(2/(5*hidden)) "
            "(arXiv 1910.05895)",
    "low_precision": "Low-precision numerics: fp16 overflow, Q/K scaled before the matmul, bf16 "
                     "(bigscience tr8-104B chronicles and BLOOM tr11-176B; Megatron-DeepSpeed "
                     "PR #118)",
    "resume": "Resume artefacts: data sampler state, replayed data after rollback (S. Bekman, "
              "Machine Learning Engineering, 'Understanding Training Loss Patterns')",
    "grokking": "Grokking: delayed generalisation (Power et al., arXiv 2201.02177); "
                "memorisation is not grokking",
}
