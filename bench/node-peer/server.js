// The benchmark's reference peer: the backend Pica's public AuthKit guide
// has people write, Express and the official @picahq/authkit-token SDK.
// It is kept as plain as the guide's examples on purpose (no clustering,
// no caching, no checks on the stored record): it stands for what a user
// would otherwise run.
//
//   PICA_SECRET_KEY=sk_test_... PICA_URL=http://127.0.0.1:PORT \
//   PORT=3000 node server.js
//
// Routes, as the broker's:
//   POST /api/authkit/token      the SDK's create() for the x-user-id user
//   POST /api/connections        stores the widget's connection record
//   *    /api/passthrough/*      forwards to PICA_URL/v1/passthrough/*
'use strict';

const express = require('express');
const { AuthKitToken } = require('@picahq/authkit-token');

const PICA_URL = process.env.PICA_URL || 'https://api.picaos.com';
const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || '127.0.0.1';

const corsHeaders = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'POST, GET, PUT, DELETE, OPTIONS',
  'Access-Control-Allow-Headers':
    'Content-Type, Authorization, x-user-id, x-connection-key',
};

// The guide keeps connections in "your database"; an in-memory map
// keyed by connection key is the simplest faithful stand-in.
const connections = new Map();

const app = express();

app.use('/api', (req, res, next) => {
  res.set(corsHeaders);
  if (req.method === 'OPTIONS') {
    return res.status(204).end();
  }
  return next();
});

app.post('/api/authkit/token', async (req, res) => {
  try {
    const userId = req.headers['x-user-id'];
    if (!userId) {
      return res.status(401).json({ error: 'Unauthorized' });
    }
    const authKitToken = new AuthKitToken(process.env.PICA_SECRET_KEY, {
      baseUrl: PICA_URL,
    });
    const token = await authKitToken.create({
      identity: userId,
      identityType: 'user',
    });
    return res.json(token);
  } catch (error) {
    return res.status(500).json({ error: 'Failed to generate token' });
  }
});

// The widget's LINK_SUCCESS record, or the guide's
// {user_id, platform, connection_key, environment, state}.
app.post('/api/connections', express.json(), (req, res) => {
  const body = req.body || {};
  const key = body.connection_key || body.key;
  if (!key) {
    return res.status(400).json({ error: 'connection_key is required' });
  }
  const existed = connections.has(key);
  const record = {
    user_id: req.headers['x-user-id'] || body.user_id || body.identity,
    platform: body.platform,
    connection_key: key,
    environment: body.environment,
    state: body.state,
    updated_at: new Date().toISOString(),
  };
  connections.set(key, record);
  return res.status(existed ? 200 : 201).json(record);
});

app.all('/api/passthrough/*path', express.raw({ type: '*/*' }),
  async (req, res) => {
    try {
      const path = req.originalUrl.slice('/api/passthrough'.length);
      const headers = {
        'x-pica-secret': process.env.PICA_SECRET_KEY,
        'x-pica-connection-key': req.headers['x-connection-key'] || '',
      };
      if (req.headers['content-type']) {
        headers['content-type'] = req.headers['content-type'];
      }
      if (req.headers['x-pica-action-id']) {
        headers['x-pica-action-id'] = req.headers['x-pica-action-id'];
      }
      const hasBody = !['GET', 'HEAD'].includes(req.method);
      const upstream = await fetch(`${PICA_URL}/v1/passthrough${path}`, {
        method: req.method,
        headers,
        body: hasBody && Buffer.isBuffer(req.body) ? req.body : undefined,
      });
      const body = Buffer.from(await upstream.arrayBuffer());
      const type = upstream.headers.get('content-type');
      if (type) {
        res.set('content-type', type);
      }
      return res.status(upstream.status).send(body);
    } catch (error) {
      return res.status(502).json({ error: 'Passthrough failed' });
    }
  });

const server = app.listen(PORT, HOST, () => {
  const { address, port } = server.address();
  console.log(`node peer listening on http://${address}:${port}`);
});
