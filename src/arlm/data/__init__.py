"""Data: corpora -> tokenizers -> cached token streams -> factorization orders.

* :mod:`arlm.data.corpora`: built-in corpora and user files, split by document;
* :mod:`arlm.data.tokenizers`: char, byte, word and BPE tokenizers with fixed special ids;
* :mod:`arlm.data.cache`: a split as a flat ``[SOS] … [EOS]`` stream, cached on disk;
* :mod:`arlm.data.orders`: left-to-right, right-to-left and random orders as permutations;
* :mod:`arlm.data.permutations`: how every random order is drawn (one seeding rule) and undone.

Import from the modules themselves (this package imports nothing, so ``arlm.data.corpora`` stays
cheap to import).
"""
