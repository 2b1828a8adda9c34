"""``onnet loadtest``: drive an onnet server with virtual clients and measure what it does.

population (synthetic users and address books), settings, schedule (the open loop's
timetable), runner (the calls, on grpc.aio), stats, server_cpu, live (the progress line),
report (table and JSON) and plot (PNG). The command itself is ``onnet_server.commands.loadtest``.
"""
