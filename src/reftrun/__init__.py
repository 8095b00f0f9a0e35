"""reftrun: a command-line experiment runner for ReFT (Representation Finetuning).

The pieces are usable on their own: `reftrun.interventions` (LoReFT, DiReFT, ablations and a registry),
`reftrun.reft` (attach interventions to a model's blocks at prompt positions), `reftrun.tasks`
(format prompts, extract and score answers). The CLI (`reftrun train|eval|table`) lives in `reftrun.cli`.
"""
__version__ = "0.1.0"
