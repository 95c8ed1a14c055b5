# syntax=docker/dockerfile:1
#
# Production image for the kill switch. One image, two processes:
#   worker (default): node --import tsx worker/index.ts
#   ingress (api):    node --import tsx api/server.ts   (docker-compose.yml overrides the command)
# TypeScript runs through tsx (a runtime dependency): there is no build step.
FROM node:20-bookworm-slim

ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

WORKDIR /app

# Dependencies first, so code changes do not invalidate the npm layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force

COPY lib/ lib/
COPY workflows/ workflows/
COPY activities/ activities/
COPY worker/ worker/
COPY api/ api/
COPY scripts/ scripts/
COPY migrations/ migrations/
# Holds at least .gitkeep; the inventory itself is normally mounted at run time (./config:/app/config:ro).
COPY config/ config/

# Non-root at run time. The app writes nothing under /app (the split processes keep state in
# PostgreSQL and Temporal); tsx keeps its cache in the OS temp dir.
USER node

EXPOSE 3000

# One process, tsx as a loader: the tsx CLI would relay SIGTERM to a child and SIGKILL it when
# it does not confirm within 30 ms (a busy worker), so `docker stop` would never drain it.
CMD ["node", "--import", "tsx", "worker/index.ts"]
