# The tiledseg Streamlit app (and CLI), for docker-compose.yml. Build context: the repository root.
FROM python:3.11-slim
WORKDIR /srv/tiledseg
COPY . .
RUN pip install --no-cache-dir -r requirements.txt
EXPOSE 8501
CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501"]
