"""The algorithms: each module is named after a part of the paper and checked against a reference.

========================  =====================================================
``dataset``               a dataset's preloaded tensors and its batch-wise augmentation
``codes``                 mnemonic codes and their replacement (section 1, Algorithm 1)
``models``                the paper's MLP and ResNet-18, a small CNN
``train``                 training with codes (Algorithm 1)
``ensemble``              K models of one recipe trained as one computation
``fisher``                the code Fisher (Eq. 6), data Fishers, distances
``forget``                the one-shot step (Eq. 5-7) and the kit's calibrated step
``metrics``               A_R, E_F, per-class accuracy, the gap to retrain
``attacks``               the membership-style attacks, one registry
``method_api``            the one signature every unlearning method shares
``baselines``             the data-based methods compared with
``methods``               the registry: mnemonic variants and baselines
========================  =====================================================

None of these reads settings files, writes artifacts or prints: they compute.  They import
nothing of the package above them (settings, io, the drivers): ``tests/test_layers.py``.
"""
