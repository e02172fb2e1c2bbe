"""What operators, sensors and triggers share: the task mixin, argument rules, waiting, re-attach, ranges."""
