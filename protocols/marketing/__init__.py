"""Pure cores of the marketing loop (issue 12): uplift statistics of a campaign, churn-risk bands.

No I/O, no processes: :mod:`~protocols.marketing.uplift` turns per-arm counts (arm size, conversions)
into a k-suppressed, optionally ε-noised release and the uplift with its confidence interval;
:mod:`~protocols.marketing.bands` turns a subscriber's churn signals into a risk band. The node jobs
(``node.jobs.marketing.evaluation``, ``node.jobs.marketing.retention``) run them where the data lives.
"""
