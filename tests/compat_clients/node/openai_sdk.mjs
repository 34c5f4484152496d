// The official Node openai SDK against the gateway (GATEWAY_URL, GATEWAY_KEY): responses.create,
// responses.stream, a continuation by previous_response_id, embeddings, a legacy completion and
// an unknown route. Prints one JSON line of what it saw; tests/api/compat/test_responses_clients.py
// checks it and what Redis holds.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.GATEWAY_URL}/v1`,
  apiKey: process.env.GATEWAY_KEY,
  maxRetries: 0,
});

const first = await client.responses.create({ model: "gpt", input: "Capital of France?" });

const stream = client.responses.stream({ model: "gpt", input: "Count to three" });
const events = [];
for await (const event of stream) events.push(event.type);
const streamed = await stream.finalResponse();

const continued = await client.responses.create({
  model: "gpt",
  previous_response_id: first.id,
  input: "And its second city?",
});

const vectors = await client.embeddings.create({ model: "gpt", input: ["one", "two"] });
const legacy = await client.completions.create({ model: "gpt", prompt: "Once", max_tokens: 5 });

let notFound = null;
try {
  await client.batches.list();
} catch (error) {
  notFound = { status: error.status, type: error.constructor.name };
}

console.log(
  JSON.stringify({
    created: { status: first.status, text: first.output_text },
    streamed: { text: streamed.output_text, events },
    continued: continued.output_text,
    embeddings: { count: vectors.data.length, dimensions: vectors.data[0].embedding.length },
    completion: legacy.choices[0].text,
    not_found: notFound,
  }),
);
