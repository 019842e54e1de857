"""The marketing loop (issue 12): governed jobs between the bank and the telco over the telco's people.

Job kinds of the family, one module each (import the family classes from their modules, not from here):

* ``segment_sizes`` (:mod:`.segments`): k-suppressed, optionally ε-noised sizes of the telco's versioned
  segments; the bank learns sizes only.
* ``app_promotion`` (:mod:`.app_promotion`): the telco scores non-customers alone with its part of a
  ``train_propensity`` model plus one signed release from the bank (:mod:`protocols.vfl.standalone`),
  screens for the bank's app not installed, excludes bank customers by PSI, splits the audience into
  treatment and holdout (:mod:`.arms`), and reaches the treatment arm through the operator's channels
  (:mod:`node.channels`); the bank learns the audience size per segment and channel, and delivery counts.
* ``campaign_evaluation`` (:mod:`.evaluation`): conversions per arm by PSI cardinality, uplift with a
  confidence interval, k-suppressed and ε-noised.
* ``churn_warning`` and ``win_back`` (:mod:`.retention`): a risk band per matched bank customer; win-back
  of lost customers through recovery reveal or relay.

Ground rule: every output concerning people who are not the bank's customers is an aggregate
(k-suppressed through ``params.min_cell``, noised where ``params.epsilon`` is set); the bank never receives
a telco-side list of non-customers, and numbers never leave the telco.
"""
