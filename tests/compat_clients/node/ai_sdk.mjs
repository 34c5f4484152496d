// The Vercel AI SDK's default OpenAI model, openai(model), which speaks the Responses API,
// against the gateway (GATEWAY_URL, GATEWAY_KEY): generateText with a tool the SDK runs
// (two model calls), then streamText. Prints one JSON line of what it saw.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const openai = createOpenAI({ baseURL: `${process.env.GATEWAY_URL}/v1`, apiKey: process.env.GATEWAY_KEY });

const result = await generateText({
  model: openai("gpt"),
  prompt: "What is the weather in Paris?",
  tools: {
    weather: tool({
      description: "The weather in a city",
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => `18C in ${city}`,
    }),
  },
  stopWhen: stepCountIs(3),
  maxRetries: 0,
});

const calls = result.steps.flatMap((step) => step.toolCalls);
const results = result.steps.flatMap((step) => step.toolResults);

const streamed = streamText({ model: openai("gpt"), prompt: "Say something", maxRetries: 0 });
let text = "";
for await (const piece of streamed.textStream) text += piece;

console.log(
  JSON.stringify({
    text: result.text,
    tool_calls: calls.map((c) => ({ name: c.toolName, input: c.input })),
    tool_results: results.map((r) => r.output),
    streamed: text,
  }),
);
