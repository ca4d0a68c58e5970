"""The queue: intake, the fair scheduler, dispatch, in-thread controls, the stopper, the reconciler."""
