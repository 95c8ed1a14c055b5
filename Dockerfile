# syntax=docker/dockerfile:1
#
# Production image for the kill switch. One image, two processes, both compiled JavaScript:
#   worker (default): node --max-old-space-size=256 dist/worker/index.js   (runs the prebuilt dist/workflow-bundle.js)
#   ingress (api):    node dist/api/server.js      (docker-compose.yml overrides the command)
# The build stage runs `npm run build` (scripts/build.ts: esbuild to dist/, the workflow bundle);
# the image itself has production dependencies only, no TypeScript loader at run time.

FROM node:20-bookworm-slim AS build

ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci

COPY tsconfig.json ./
COPY contracts/ contracts/
COPY lib/ lib/
COPY store/ store/
COPY workflows/ workflows/
COPY activities/ activities/
COPY worker/ worker/
COPY api/ api/
COPY scripts/ scripts/
COPY tools/ tools/
RUN npm run build

FROM node:20-bookworm-slim

ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

WORKDIR /app

# Dependencies first, so code changes do not invalidate the npm layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force

COPY --from=build /app/dist/ dist/
# Read at run time besides dist/: the SQL migrations, the failure converter the data converter
# loads by path, and the workflow sources with the contracts they import, which the worker hashes
# against the bundle's manifest before it runs the bundle (on a mismatch it would bundle them at
# start, and say so).
COPY migrations/ migrations/
COPY lib/failure-converter.cjs lib/
COPY contracts/ contracts/
COPY workflows/ workflows/
# Holds at least .gitkeep; the inventory itself is normally mounted at run time (./config:/app/config:ro).
COPY config/ config/

# Non-root at run time. The app writes nothing under /app (the split processes keep state in
# PostgreSQL and Temporal).
USER node

EXPOSE 3000

# Node itself as PID 1's child (compose runs it with init: true), so SIGTERM reaches the worker and
# it drains its in-flight tasks.
CMD ["node", "--max-old-space-size=256", "dist/worker/index.js"]
