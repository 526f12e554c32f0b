"""The demo's task logs: a `dags test` console output cut into each task's log."""

from __future__ import annotations

from winecrm_tools.demo.task_logs import split_tasks

RUN = "manual__2026-12-03T07:47:12.748737+00:00"
OUTPUT = f"""\
2026-12-03T07:47:18.902112Z [info     ] [DAG TEST] starting task_id=load map_index=-1 [airflow.sdk.definitions.dag] loc=dag.py:1501
2026-12-03T07:47:18.902694Z [info     ] [DAG TEST] running task <TaskInstance: crm_weekly.load {RUN} [TaskInstanceState.SCHEDULED] ti_id=01a2> [airflow.sdk.definitions.dag] loc=dag.py:1504
2026-12-03T07:47:18.914024Z [info     ] Task started                   [airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a2 hostname=vm loc=task_instances.py:226
2026-12-03T07:47:18.937251Z [info     ] ::endgroup::                   [task] loc=task_runner.py:2232
2026-12-03T07:47:18.953754Z [error    ] Task failed with exception     [task] loc=task_runner.py:1100
Traceback (most recent call last):
  File "/x/pipeline.py", line 10, in load
winecrm.pipeline.WeekNotLoaded: no sales export [of] the week
2026-12-03T07:47:18.978592Z [info     ] [DAG TEST] end task task_id=load map_index=-1 [airflow.sdk.definitions.dag] loc=dag.py:1563
2026-12-03T07:47:19.000000Z [info     ] something between two tasks    [airflow.sdk.definitions.dag]
"""


def test_a_traceback_stays_with_its_line_and_the_execution_api_is_left_out():
    (load,) = split_tasks(OUTPUT)
    assert (load.dag_id, load.run_id, load.task_id, load.map_index) == ("crm_weekly", RUN, "load", -1)
    assert [e["event"].splitlines()[0] for e in load.entries] == ["Task failed with exception"]
    (failure,) = load.entries
    assert failure["level"] == "error" and failure["logger"] == "task"
    assert failure["timestamp"] == "2026-12-03T07:47:18.953754+00:00"
    assert failure["event"].endswith("WeekNotLoaded: no sales export [of] the week")
