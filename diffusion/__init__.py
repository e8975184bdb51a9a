"""The one diffusion core shared by MCSDR and LaMoD: shape-agnostic pure functions.

schedule.py  discrete VP schedule (linear β, T steps) and its continuous VP-SDE form;
losses.py    forward noising and the ε-prediction loss (MCSDR Eq. 6);
samplers.py  DDPM ancestral, DDIM, and the probability-flow ODE (MCSDR Eq. 4) with diffrax.
"""
