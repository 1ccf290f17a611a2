"""The maths and the model: pure functions of arrays and parameters, no files and no config.

In the order they build on each other: ``rng`` (fused random draws), ``trees`` (stacking,
indexing and batching pytrees), ``distributions`` (log-densities, samples, KLs), ``data``
(datasets as arrays and their checks), ``registry`` (the named built-in components), ``nets``
(Linen MLPs and conv nets), ``networks`` (one protocol for Linen, NNX, Equinox and pure-function
networks), ``likelihoods`` p_theta(x|z), ``priors`` p(z), ``posteriors``
q_phi(z|x), ``model`` (:class:`VAE` from networks), ``checks`` (a model traced abstractly against its
data before a run), ``flows`` (the IAF posterior), ``ladder``
(the Ladder VAE), ``vdvae`` (the very deep top-down hierarchy),
``vaes`` (the built-in models of one and two stochastic layers),
``objectives`` (ELBO, IWAE, DReG), ``estimators`` (log p(x) by importance sampling, the local
q*), ``linear_gaussian`` (the VAE whose every term has a closed form).
"""
