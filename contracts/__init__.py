"""The contracts between processes: what a workflow asks of its activities and what the API
sends to a workflow. Names of activities, signals and updates, the input and result
dataclasses, and the activities' interfaces, which the classes in `activities/` implement.

Both sides import these modules; neither imports the other. They import only the standard
library and temporalio, so the workflow sandbox loads them in no time. A workflow calls an
activity through its interface method (`workflow.execute_activity_method(SendContract.
deliver_message, ...)`), so mypy checks the argument and the result across the boundary.

Names never change once a run has recorded them (replayed histories depend on them). Fields
added later get defaults, so older runs still decode.
"""
