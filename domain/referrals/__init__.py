"""Referrals (转介绍 / 裂变): who brought whom, the trees they form, and the rewards they earn."""
