"""The joint-statistics example as a library: what ``enclavekit demo`` runs, usable from
Python by a data owner or a test.

* :mod:`.data`: the two owners' synthetic records and the reference computation.
* :mod:`.owner`: a data owner's side of ``examples/joint_stats`` (records encrypted in
  batches, the result decrypted, the direct key transfer by quote, a DCAP verifier).
* :mod:`.scenario`: the whole scenario on one VM (:func:`.scenario.run`), reporting
  :mod:`.events` to a callback; it uses :mod:`enclavekit.services` (the trust services)
  and :mod:`enclavekit.kms.owner` (importing a key with a release policy).

:mod:`enclavekit.ray.jointstats` runs the same statistics partitioned over Ray nodes.
"""
