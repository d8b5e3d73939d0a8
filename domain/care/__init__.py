"""Care: visits (appointments), orders with refunds, and the rules that make follow-up tasks."""
