"""Disclosure control: the rules a site holds, k-cells, the policy, differential privacy, audit."""
