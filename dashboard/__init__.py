"""The Streamlit dashboard: ``streamlit run dashboard/app.py``. It reads and writes database rows and queues jobs;
training never runs in the Streamlit process."""
