"""Training: the release's optimiser, recipes, the one loop, DDP, checkpoints and resume.

Entry points: `lxmert.api.train(...)`, or `Trainer(recipe, task, out_dir)` with a task
object (`lxmert.training.task.Task`, registered in `lxmert.tasks`).
"""
