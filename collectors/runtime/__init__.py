"""The collector process: config, scheduler, sender, spool, live config watch, own metrics."""
