# tiledseg's Streamlit app in a container: the Hugging Face Docker Space (`python -m model_zoo
# space` stages this file as the Space's Dockerfile) and the `app` service of
# deploy/docker-compose.yml. Build context: the repository root or the staged Space folder, which
# both hold app.py, its packages and requirements.txt at the top (.dockerignore trims the rest).
FROM python:3.11-slim

# Spaces run the container as uid 1000, so the app runs as that user from the start, and every
# cache it writes (Hugging Face, Keras, the OpenVINO/ONNX conversions, Streamlit) lives in that
# user's home.
RUN useradd --create-home --uid 1000 user
USER 1000
ENV HOME=/home/user \
    PATH=/home/user/venv/bin:$PATH \
    XDG_CACHE_HOME=/home/user/.cache \
    HF_HOME=/home/user/.cache/huggingface \
    KERAS_HOME=/home/user/.keras \
    TILEDSEG_CACHE_DIR=/home/user/.cache/tiledseg \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /home/user/app

# The pinned requirements first, so a code change does not reinstall TensorFlow. The project
# itself is not installed: `streamlit run app.py` and `python -m tiledseg` import it from here.
COPY --chown=1000:1000 requirements.txt ./
RUN python -m venv /home/user/venv \
    && grep -v '^-e ' requirements.txt > /home/user/requirements.txt \
    && pip install --no-cache-dir -r /home/user/requirements.txt \
    && rm /home/user/requirements.txt
COPY --chown=1000:1000 . .

# The Space's app_port. XSRF protection is off because a Space shows the app in an iframe on
# huggingface.co, where Chrome withholds the app's XSRF cookie and every upload would fail with
# 403 (huggingface.co/docs/hub/spaces-cookie-limitations); the demo has no login to protect.
EXPOSE 7860
CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=7860", \
     "--server.headless=true", "--server.enableXsrfProtection=false", \
     "--browser.gatherUsageStats=false"]
