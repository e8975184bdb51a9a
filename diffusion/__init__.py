"""The one diffusion core shared by MCSDR and LaMoD: shape-agnostic pure functions.

schedule.py  VPSchedule: the discrete VP schedule (linear β, T steps) and its continuous
             VP-SDE form, one hashable object that models and samplers take;
losses.py    forward noising, x̂0 from ε̂, and the ε-prediction loss (MCSDR Eq. 6);
samplers.py  DDPM ancestral, DDIM, the probability-flow ODE (MCSDR Eq. 4) with diffrax and
             LaMoD's one-ε̂ shortcut, behind one registry (SamplerConfig → get_sampler).
"""
