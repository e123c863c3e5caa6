"""What a data plane reports about its calls besides traces: access logs, Istio's metrics."""
